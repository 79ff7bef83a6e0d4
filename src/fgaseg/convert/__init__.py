"""Converter for the official CAT-Seg / FGA-seg detectron2 checkpoints."""
