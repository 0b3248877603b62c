"""pydeck layer builders: data in, pydeck.Layer out."""
