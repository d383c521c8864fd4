"""The tests of ``streamkit.testing`` run small user test suites with pytester.

(A ``pytest_plugins`` here is allowed: pytest loads the conftests of ``test*``
directories of its test paths at start-up.)
"""

pytest_plugins = ["pytester"]
