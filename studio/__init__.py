"""GAN Art Studio: train a small GAN on your own paintings."""
