module example.com/contactcard-example

go 1.22
