"""One thin module per command: parse options, call the library, render the result."""
