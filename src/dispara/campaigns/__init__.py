"""Campaign input: the YAML model, the contacts CSV, phones, templates and the message pipeline.

Pure logic: nothing here touches the database or the network.
"""
