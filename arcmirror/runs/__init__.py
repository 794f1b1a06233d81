"""The runs behind the tasks, sharing one report module (``report``): discover, mirror, the steps, verify,
the gate, the air gap, the Docker engine route, and the routes that put them behind one interface."""
