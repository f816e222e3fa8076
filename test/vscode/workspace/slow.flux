a very slow painting of a harbour at night
steps: 200
width: 256
height: 256
