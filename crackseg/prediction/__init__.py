"""Prediction: whole images or sliding windows, torch or ONNX, a folder of photos, and the script API."""
