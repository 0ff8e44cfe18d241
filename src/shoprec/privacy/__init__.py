"""Personalisation without exposure: privacy at ingestion, in training and on request.

Modules (import what you need; nothing is imported here, so `import shoprec` stays cheap and the
optional extras are only needed by the modules that use them):

    pseudonym       keyed HMAC-SHA256 pseudonyms of shopper ids, keys from env or key files
    ingest          drop direct identifiers, pseudonymise, coarsen timestamps, store the log
    kanon           k-anonymity of shopper attributes by generalisation and suppression
    dp              user-level DP-SGD (Opacus), budget checks, accounting, PrivacyReport
    dpmf            "dp-mf": matrix factorisation with user-level DP
    dptransformer   "dp-transformer": the behaviour Transformer with user-level DP
    dp_counts       DP item counts for the popularity / trending pools; "dp-pop"
    discrete        exact discrete Laplace / Gaussian noise (secure or seeded) and its calibration
    mia             membership-inference (loss-threshold) attack and its AUC
    federated       Flower ClientApp / ServerApp, FedAvg over item parameters, DP-FedAvg, SecAgg+
    erasure         forget(user): logs, datasets, saved models, shared-weight policy
    sharded         "sisa": shard-wise retraining for exact unlearning
    report          the privacy report behind `shoprec privacy-report`

docs/privacy.md states the guarantees and the measured figures.
"""
