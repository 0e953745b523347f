"""The solver protocol shared by the client, the validation and the simulator: the method table
(``methods``)."""
