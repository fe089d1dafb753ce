"""Attributions over time and gate plots on Captum (the ``explain`` extra); imported only when used."""
