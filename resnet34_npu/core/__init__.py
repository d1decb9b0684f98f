"""The foundation every wing stands on: errors and how they are shown, constants, atomic files and
JSON documents. Imports nothing of the package.
"""
