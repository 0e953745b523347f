"""The solver protocol shared by the client, the validation, the gateway and the simulator: the method
table (``methods``) and the JSON API's task type table (``tasktypes``)."""
