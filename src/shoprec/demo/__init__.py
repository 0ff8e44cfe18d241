"""The bundled demo shop: package data read by `shoprec.data.readers.load_demo` (see README.md)."""
