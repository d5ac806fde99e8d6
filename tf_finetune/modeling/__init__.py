"""Building and compiling the classifier: model, loss, optimizer, schedule."""
