"""A test stand-in for Colab's `google.colab` package: not Google's code, and it does nothing.

`tests/test_colab.py` puts the folder above `google/` on the kernel's `PYTHONPATH` and imports
this module when the kernel starts, as every Colab kernel has `google.colab` imported. The
notebooks ask only that (`"google.colab" in sys.modules`, in their set-up cell), so nothing of
the real package's API is stood in: a notebook that used one (`google.colab.files`,
`google.colab.drive`, ...) would fail here, and that is the point: the stand-in would have to
learn it first.

`google` itself has no `__init__.py` here, so it stays a namespace package and
`google.protobuf` (TensorFlow's) is still found in the kernel's site-packages.
"""

IS_STAND_IN = True  # tests/test_colab.py checks that the kernel imported this module
