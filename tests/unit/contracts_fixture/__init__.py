"""Contracts the chaincode tests register (each in its own module: the registry hashes and
checks a contract's whole module)."""
