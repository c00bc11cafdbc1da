"""hvc.data"""
