"""Signature verification: Notary Project signatures and cosign key signatures, offline, against the site's trust folder."""
