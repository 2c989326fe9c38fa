"""Blender-free core: conversion, tiling, worker protocol and client, styles.

Only the standard library and numpy are used here, because this side also runs inside
Blender's own Python, which has neither TensorFlow nor OpenCV.
"""
