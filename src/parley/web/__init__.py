"""Static files of the built-in web page."""
