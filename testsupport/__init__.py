"""Test support shared by the tests, the benchmarks and the demo village.

``testbed`` builds phones, a gateway and an upstream "internet" host in network namespaces
(root only), like pyroute2's fixtures: everything it creates it removes again.
Nothing in the product imports this package.
"""
