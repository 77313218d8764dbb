"""twisted.web's Site and Resource, over weft's HTTP/1.1 channel."""
