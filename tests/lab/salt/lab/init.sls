# Marks a minion as a lab host (for people looking around inside one).
lab-marker-file-managed:
  file.managed:
    - name: /etc/opskit-lab
    - contents: This host is a minion of the opskit test lab.
    - mode: "0644"
