"""Robot USD files built from robot descriptions that packages on the package index ship."""
