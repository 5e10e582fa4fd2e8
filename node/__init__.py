"""Node: the daemon and its edges — configuration, bootstrap, transport, roles and APIs.

This is the only package that creates tasks, timers and sockets and that reads clocks; it
wires the pure cores (consensus, chaincode) to storage and the network.

Imports: protocol, identity, consensus, chaincode, storage.
"""
