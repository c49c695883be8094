"""Pure rating: tariff model, number normalisation, prefix index, bands, block pricing."""
