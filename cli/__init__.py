"""The ``medledger`` command line, built with click.

Imports: node, storage, identity, protocol. click is imported here and nowhere else.
"""
