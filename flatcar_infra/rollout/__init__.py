"""Fleet rollouts: a config change applied to many machines in waves (Pulumi ``Fleet`` and CLI).

``policy`` and ``schedule`` are pure decisions; ``runner`` drives the hosts from one event loop;
``inventory`` reads the CLI's hosts; ``provider`` is the Pulumi dynamic resource.
"""
