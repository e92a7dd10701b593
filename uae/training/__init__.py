"""Training the dual encoder: the losses as pure tensor functions (losses.py), the LightningModule that
calls them (module.py), and the batches of scored candidate groups it trains on (datamodule.py).
"""
