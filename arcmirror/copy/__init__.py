"""The copy algorithm (``copier``), blob placement (``blobs``) and referrer discovery (``referrers``)."""
