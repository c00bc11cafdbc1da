"""hvc.propagation"""
