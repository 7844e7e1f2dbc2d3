"""Helpers the tests share: checks that stand in for tools this machine does not have.

:mod:`tests.support.powershell` parses PowerShell with tree-sitter, since no PowerShell runs here;
every script and command a Windows renderer or operation emits goes through it.
"""
