"""The lab toolkit, a distribution of its own (`hacluster-lab`, the `[lab]` extra): network-namespace
labs, drills with their playbooks, chaos, benchmarks, the lab side of `mx`, the local test cluster
and the demo. A mail node never needs it; the product (`hacluster`) never imports it and finds its
commands through the `hacluster.commands` entry points."""
