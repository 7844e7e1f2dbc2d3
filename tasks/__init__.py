"""Controller side: render (stack.yaml -> host files) and the pyinfra deploy tasks."""
