import "../../../etc/passwd"
