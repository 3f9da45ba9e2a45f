"""What the proxy tells the outside: every metric (`metrics`, the one place they are
defined) and the JSON logs (connection and request records, never a user id).
"""
