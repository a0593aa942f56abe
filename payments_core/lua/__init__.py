"""Redis scripts of the velocity store, loaded as package resources (``velocity.lua_script``)."""
