"""Networks: the ResNet encoders, the HVC training model and its heads."""
