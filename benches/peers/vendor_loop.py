"""The loop users copy from the vendor documents (iNode's example): GET each endpoint with
the token, print the JSON, refresh on 401 (here: the benchmark's token does not expire).
Polls as fast as it can for DURATION seconds; the benchmark measures its CPU per poll.

usage: ACCESS_TOKEN=... python3 vendor_loop.py URLS_FILE DURATION
"""
import os
import sys
import time

import requests

urls = open(sys.argv[1]).read().split()
deadline = time.monotonic() + float(sys.argv[2])
authorized_header = {"Authorization": "Bearer %s" % os.environ["ACCESS_TOKEN"]}
polls = 0
while time.monotonic() < deadline:
    for url in urls:
        response = requests.get(url, headers=authorized_header)
        if response.status_code == 401:
            sys.exit("token expired: the vendor loop would refresh here")
        print(response.json())
        polls += 1
        if time.monotonic() >= deadline:
            break
print("polls", polls, file=sys.stderr)
