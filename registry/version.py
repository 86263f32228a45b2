"""The package's version, in a module of its own so that any module can read it without importing the
package's face (registry/__init__.py sits above everything it hands on)."""

__version__ = "0.1.0"
