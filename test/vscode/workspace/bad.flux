a castle on a hill <lora:ink:0.7>
sed: 4
width: 1000

一只猫坐在窗边，油画风格，温暖的灯光，细节丰富

word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word0 word1 word2 word3 word4 word5
word6 word7 word8 word9 word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word0 word1
word2 word3 word4 word5 word6 word7 word8 word9 word0 word1 word2 word3 word4 word5 word6 word7
word8 word9 word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word0 word1 word2 word3
word4 word5 word6 word7 word8 word9 word0 word1 word2 word3 word4 word5 word6 word7 word8 word9

a boat on a lake
strength: 0.4
