"""hvc.metrics"""
