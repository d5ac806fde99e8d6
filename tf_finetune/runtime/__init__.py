"""The process around a run: run directories, atomic writes, devices, cluster."""
