"""The worker side: TensorFlow inference in its own interpreter (never imported by Blender)."""
