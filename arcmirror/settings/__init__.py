"""Settings: every variable declared once (``variables``), read from task options, the environment
and a ``.env`` file (``load``, ``envfile``), and the image set files (``imageset``)."""
