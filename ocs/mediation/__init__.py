"""Mediation: CDR files written by switches, rated and charged once (docs/wholesale.md, "Mediation")."""
