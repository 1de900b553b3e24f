"""The lab side of `mx`: `mx validate` plays a delivery scenario in the netns lab with real Postfix."""
