"""Serving engines beyond the model's own library: conversion to ONNX and the gates it must pass."""
