"""shoprec: e-commerce recommendation that exploits interest, explores, and protects privacy."""

__version__ = "0.1.0"
