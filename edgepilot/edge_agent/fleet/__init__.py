"""The MQTT UE fleet (issue 6): one agent per UE runs the DTAC actor on its own local
state (14) and executes the decision locally or on its edge server over gRPC.

Modules: :mod:`topics` (the versioned topic tree), :mod:`payloads` (parse + range checks),
:mod:`outbox` (disk-backed, ordered, bounded telemetry queue), :mod:`policy` (the
``Policy`` protocol and its implementations), :mod:`execution` (the TaskExecution gRPC
service of edge servers and the cloud tier, and its client), :mod:`ota` (signed policy
updates with rollback), :mod:`agent` (the UE agent itself).

No torch, no cloud_trainer, no export here.
"""
