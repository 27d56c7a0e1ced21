"""Models. Adding one: a class here plus a YAML file in configs/model/ naming it in `_target_`."""
