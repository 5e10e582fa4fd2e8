"""The built-in contracts every node installs (the network configuration pins them)."""
