"""``edgectl``: the operator's tool for pushing configs to edged devices and watching them."""
