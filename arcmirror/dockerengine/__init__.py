"""The Docker engine, through the Docker SDK: ``client`` (pull, tag, push), ``stream`` (its progress), ``hints``."""
