"""What the copy algorithm reads from and writes to, behind one small contract (``base``)."""
